"""Example third-party GenHancer plugin."""
