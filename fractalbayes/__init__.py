"""fractalbayes."""
