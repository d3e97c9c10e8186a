"""sensorfuse nodes."""
