# train/device.h: train.device and the backend it selects, and core/transfer.h on the CPU
# (area: gputrain; no GPU needed).
loom_test(test_train_device SOURCE ${PROJECT_SOURCE_DIR}/tests/unit/test_train_device.cpp DEPS loom_train LABELS unit)
