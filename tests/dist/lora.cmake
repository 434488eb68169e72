# LoRA training under dp, tp, pp and ZeRO-1 against one process (adapter weights, losses,
# merged export, frozen base). loom_mpi_test comes from launch.cmake (included before this).
loom_mpi_test(lora DEPS loom_train RANKS 2 4)
