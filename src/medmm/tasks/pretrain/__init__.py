"""Image-encoder pretraining (self-supervised and supervised) for the other tasks' encoders.
"""
