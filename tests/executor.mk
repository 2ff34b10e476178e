# tests/executor.mk
