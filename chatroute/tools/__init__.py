"""What the command line runs besides the long-running processes: replay (more to come)."""
