"""The Gradio demo (`lesionlens demo`): app.py builds and launches it; backends.py is where the
explanations come from (in-process or a sidecar); model_card.py reads the run directory."""
