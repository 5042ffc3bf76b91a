"""The models: architecture, training and save/load, at both scales (the judge, dual encoder,
visual tokenizer, unified LMM, latent diffusion, frozen text LLM). ``tigerlib.zoo`` builds and
loads them; their quality metrics live in ``tigerlib.evaluation``."""
