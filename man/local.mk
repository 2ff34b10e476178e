# man/local.mk -- the manual: one mdoc page per family of functions and the
# evexec(7) overview.
#
# Each page names every function it documents with .Nm in its NAME section.
# `make install` installs the pages, then every extra name of a page as a
# symbolic link to it (man evexec_pool_free opens evexec_pool_new.3); the
# names are read from the pages themselves, so a function added to a page is
# linked with no change here. mandoc's linter dislikes .so stub pages, hence
# links. `make uninstall` removes the links again (distcheck checks it).

evexec_man3_pages = \
	man/evexec_call_soon.3 \
	man/evexec_cfuture_state.3 \
	man/evexec_cfuture_wait_many.3 \
	man/evexec_future_new.3 \
	man/evexec_gather.3 \
	man/evexec_loop_new.3 \
	man/evexec_loop_set_default_pool.3 \
	man/evexec_pool_new.3 \
	man/evexec_pool_new_limited.3 \
	man/evexec_pool_submit.3 \
	man/evexec_queue_work.3 \
	man/evexec_run_in_executor.3 \
	man/evexec_sleep.3 \
	man/evexec_strerror.3 \
	man/evexec_worker_state.3
evexec_man7_pages = man/evexec.7
dist_man_MANS += $(evexec_man3_pages) $(evexec_man7_pages)

# Print "page link" for every extra .Nm name of the section-3 pages.
evexec_man_links = \
	for page in $(evexec_man3_pages); do \
	  base=`basename $$page`; \
	  sed -n '/^\.Sh NAME/,/^\.Nd/s/^\.Nm \([A-Za-z0-9_]*\).*/\1/p' \
	    "$(srcdir)/$$page" | while read name; do \
	    test "$$name.3" = "$$base" || echo "$$base $$name.3"; \
	  done; \
	done

install-data-hook: install-man-links
uninstall-hook: uninstall-man-links

install-man-links:
	@$(evexec_man_links) | while read target link; do \
	  echo " cd '$(DESTDIR)$(man3dir)' && $(LN_S) -f $$target $$link"; \
	  (cd "$(DESTDIR)$(man3dir)" && rm -f "$$link" && $(LN_S) "$$target" "$$link") || exit 1; \
	done

uninstall-man-links:
	@$(evexec_man_links) | while read target link; do \
	  echo " rm -f '$(DESTDIR)$(man3dir)/$$link'"; \
	  rm -f "$(DESTDIR)$(man3dir)/$$link"; \
	done

.PHONY: install-man-links uninstall-man-links
