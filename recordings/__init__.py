"""Recording during a live, finishing into an on-demand video, playback and chat replay."""
