"""Reaching the console over SSH: keys, the OpenSSH forced command, the embedded server.

Nothing here imports textual: the console runs in a child process (`dispatch ssh-session`).
"""
