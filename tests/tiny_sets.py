"""Tiny configs that make a method train in about a second (``wsseg train --set``),
shared by the widget and the training tests."""

TINY = {
    "manifold": {
        "image_size": "32",
        "layers": "1,1,1",
        "widths": "8,16,32",
        "embedding_dim": "16",
        "per_class": "2",
        "attention_filters": "8,4,1",
    },
    "glam": {
        "image_size": "128,96",
        "patch_size": "32",
        "global_widths": "4,8,8,16,16",
        "local_widths": "4,8",
        "local_blocks": "1,1",
        "attention_hidden": "8",
        "k_train": "2",
        "batch_size": "1",
    },
}
