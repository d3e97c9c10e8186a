"""sensorfuse replay."""
