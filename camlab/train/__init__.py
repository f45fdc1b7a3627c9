"""How train_cam.py trains: distribution, caching, precision, the linear probe."""
