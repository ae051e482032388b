"""Bench-only servers of `GET /users/{id}`: the article's patterns, classic, lean, ceilings."""
