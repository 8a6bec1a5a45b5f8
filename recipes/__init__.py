"""emofeat recipes: temporal and fusion predictors trained on stored features."""
