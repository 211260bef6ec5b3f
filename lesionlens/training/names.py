"""Architecture names, importable without torch (the CLI's --help and choices use them)."""

ARCHITECTURES = ("resnet50", "attention_resnet50", "efficientnet_b0_relu")
