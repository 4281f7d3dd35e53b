"""Pure building blocks: returns, losses, exploration, the episode buffer."""
