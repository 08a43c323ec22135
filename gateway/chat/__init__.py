"""`tandem chat`: the terminal chat, a client of a running Tandem over its OpenAI API."""
