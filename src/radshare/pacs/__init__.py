"""PACS integration: query (C-FIND, QIDO-RS) and retrieve (C-MOVE, C-GET, WADO-RS) for an organisation's PACS;
``client`` is the door the other apps use."""
