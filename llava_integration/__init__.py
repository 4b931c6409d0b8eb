"""LLaVA-1.5 with a GenHancer-enhanced vision tower.

- :mod:`.tower`: put an exported (or any Hugging Face) CLIP/SigLIP tower into a
  LLaVA-1.5, LLaVA-NeXT or LLaVA-OneVision model (:mod:`.families`) and keep its
  processor consistent.
- :mod:`.conversation` and :mod:`.data`: LLaVA's JSON format, Vicuna v1
  template, loss on assistant tokens only.
- :mod:`.train`: the two LLaVA-1.5 phases (projector pretraining, visual
  instruction tuning) on the Hugging Face Trainer.
- :mod:`.scoring`: likelihood-based multiple choice, as the paper evaluates (every family).
"""
