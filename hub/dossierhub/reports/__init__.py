"""Report runs: templates executed with parameters, their outputs checked, rendered and released."""
