"""modelserve-echo: a third-party backend (``backend``) and the engine it starts (``server``)."""
