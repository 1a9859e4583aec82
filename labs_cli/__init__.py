"""The `labs` command: a chat REPL and admin subcommands that talk gRPC to the core (never torch)."""
