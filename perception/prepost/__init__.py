"""Pre- and post-processing for the default model pack, in numpy and OpenCV only.

One module per model family; each takes the manifest's pre/post-processing record, so a
user's model with the same contract reuses the code by writing a manifest. Nothing here
runs a model: functions take arrays in and give arrays out, and the streaming VAD takes
the model as a callable, so everything is testable without onnxruntime.
"""
