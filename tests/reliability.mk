# tests/reliability.mk
