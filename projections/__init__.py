"""Pure folds from events and prompts to documents."""
