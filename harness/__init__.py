"""The offline harness's stand-ins (see stand_ins.py): test doubles, kept out of components/ and tools/."""
