"""The Gradio demo: `colorizer demo` (demo.app.launch) around the pure functions of demo.logic."""
