"""Models on the Hugging Face Hub: the registry (`registry`), resolving and pulling (`pull`), what is where (`catalog`)."""
