"""Manifest-level contracts of the torch-exported models, importable without torch.

Input/output tensors and pre/post-processing for EfficientNet-Lite0, MobileNetV2 and
MiniLM live here rather than next to the torch code so that `verify`, the int8 accuracy
check and the benchmark can use them on a machine where torch is not installed.
"""

from __future__ import annotations

from sensorfuse.engine import manifest as mf

IMAGE_SIZE = 224
IMAGE_INPUTS = [mf.TensorSpec("image", "float32", ["batch", 3, IMAGE_SIZE, IMAGE_SIZE])]
IMAGE_OUTPUTS = [
    mf.TensorSpec("logits", "float32", ["batch", 1000]),
    mf.TensorSpec("embedding", "float32", ["batch", 1280]),
]
CLASSIFIER_POST = mf.ClassifierPost(logits="logits", embedding="embedding", top_k=5)

# TF-Lite convention (mean 127, std 128) on bicubic 87.5 % crops: the ImageNet mean/std
# from the package README gives clearly worse labels (MODELS.md).
EFFICIENTNET_PRE = mf.CenterCropPre(
    size=IMAGE_SIZE, crop_fraction=0.875, interpolation="bicubic",
    mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0),
)
# torchvision: resize the short side to 256, centre crop 224 == crop 87.5 %, resize 224.
MOBILENET_PRE = mf.CenterCropPre(
    size=IMAGE_SIZE, crop_fraction=224 / 256, interpolation="bilinear",
    mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375),
)

MINILM_DIM = 384
MINILM_TOKENIZER_FILE = "minilm_l6_v2.tokenizer.json"
MINILM_PRE = mf.TokenizerPre(file=MINILM_TOKENIZER_FILE, max_length=256)
MINILM_POST = mf.EmbeddingPost(output="embedding", normalized=True)
MINILM_INPUTS = [
    mf.TensorSpec("input_ids", "int64", ["batch", "tokens"]),
    mf.TensorSpec("attention_mask", "int64", ["batch", "tokens"]),
]
MINILM_OUTPUTS = [mf.TensorSpec("embedding", "float32", ["batch", MINILM_DIM])]

SILERO_PRE = mf.AudioStreamPre(sample_rate=16000, chunk=512, context=64, state_shape=[2, 1, 128])
SILERO_POST = mf.VadPost()
SILERO_INPUTS = [
    mf.TensorSpec("input", "float32", ["batch", "samples"]),
    mf.TensorSpec("state", "float32", [2, "batch", 128]),
    mf.TensorSpec("sr", "int64", []),
]
SILERO_OUTPUTS = [
    mf.TensorSpec("output", "float32", ["batch", 1]),
    mf.TensorSpec("stateN", "float32", [2, "batch", 128]),
]

BLAZEFACE_PRE_SHORT = mf.LetterboxPre(size=128)
BLAZEFACE_PRE_FULL = mf.LetterboxPre(size=192)
BLAZEFACE_POST_SHORT = mf.SsdFacePost(strides=[8, 16, 16, 16], anchors_per_cell=[2, 2, 2, 2])
# Full range: one grid at stride 4, one anchor per cell (48 × 48 = 2304).
BLAZEFACE_POST_FULL = mf.SsdFacePost(strides=[4], anchors_per_cell=[1], min_score=0.6)
LANDMARK_PRE = mf.FaceCropPre(size=192, scale=1.5, mean=0.0, std=255.0)
LANDMARK_POST = mf.LandmarksPost(num_points=468)
