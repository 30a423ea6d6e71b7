"""OpenFlamingo-3B (CLIP ViT-L/14 + MPT-1B), implemented natively. See docs/flamingo.md."""
