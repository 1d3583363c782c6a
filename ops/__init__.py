"""Operations tooling for the Habitto chat stack (the on-call checks live in ops.oncall)."""
