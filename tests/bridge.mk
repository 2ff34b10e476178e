# tests/bridge.mk
