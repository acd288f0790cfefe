"""An example of "your own network" for prunetune: a model factory and a data factory."""
