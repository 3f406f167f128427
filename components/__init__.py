"""Samarth's servers as Pulumi components: one module per server role or shared concern."""
