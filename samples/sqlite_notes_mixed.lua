-- wrk -s samples/sqlite_notes_mixed.lua: a mixed load on sqlite_notes over a
-- database made with --seed 300000: 89% point reads, 10% writes, 1% scans.
local words = {"river", "amber", "cedar", "falcon"}

request = function()
  local r = math.random(100)
  if r <= 89 then
    return wrk.format("GET", "/notes/" .. math.random(300000))
  elseif r <= 99 then
    return wrk.format("POST", "/notes", nil, "a note written under load")
  else
    return wrk.format("GET", "/search?q=" .. words[math.random(#words)])
  end
end
