"""Adapters: modules that expose another implementation under the kit's names (`ftkit check --impl ...`)."""
