"""PACS integration: query (C-FIND, QIDO-RS) and retrieve (C-MOVE, C-GET, WADO-RS) for an organisation's PACS."""

from radshare.pacs.client import (
    PacsError,
    PacsStudy,
    RetrieveResult,
    StudyQuery,
    echo,
    find_studies,
    retrieve_study,
)

__all__ = ["PacsError", "PacsStudy", "RetrieveResult", "StudyQuery", "echo", "find_studies", "retrieve_study"]
