"""A saved emotion model: load and save (`io`), custom heads and the small model (`heads`), stacks (`stack`)."""
