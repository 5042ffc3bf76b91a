"""The model zoo: dual encoder and visual tokenizer (and, later, the LMM, diffusion, text LLM)."""
