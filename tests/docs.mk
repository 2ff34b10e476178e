# tests/docs.mk
