from vidinv.cli import entry

entry()
