"""The decision stage: a detector's raw score and evidence become a verdict, in one place.

``judge.Policy`` gathers everything a verdict depends on: the model's calibrated
threshold or the recipe's override, the smallest region that counts, the pixel pitch,
and the recipe's region rules. ``judge.ImageDecider`` applies it to an image's score and
anomaly map. "Why was this part NG?" is answered in ``judge.py``.
"""
