MESSAGE="hello from the shell app"
