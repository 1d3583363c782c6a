"""Accounts of the standalone chat server: profiles, JWT login/refresh/logout,
registration, user and profile lookup, and the user cards the chat app shows.

Habitto's own backend has its own accounts; the chat app only needs `cards.user_cards`.
"""
