"""Knowledge: knowledge graphs and retrieval stores for augmentation."""
