"""The ToP method as pure tensor functions (torch only)."""
