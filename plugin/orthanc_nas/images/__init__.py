"""Images as users see them: ownership, search, tags, share links, dashboard figures."""
