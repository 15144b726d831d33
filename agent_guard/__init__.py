"""agent-guard: LiveKit voice agents that fail audibly and predictably."""
