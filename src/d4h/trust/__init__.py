"""Trust: node keys, did:web documents, VC-JOSE credentials, presentations and DCP self-issued ID tokens.

Everything here is pure given its arguments: keys, the clock, DID fetching and status-list fetching are
passed in, so the node shell owns all I/O. Import from the modules:

    keys           KeyPair, KeyRing, generate/rotate/prune, save/load (0600)
    did            did:web <-> URL, build_did_document, DidDocument, DidResolver
    status_list    BitstringStatusList, status_entry, status_list_credential
    credentials    issue_credential, verify_credential, membership_credential
    presentations  build/verify_presentation, scopes, select_credentials, PresentationCache
    tokens         create/verify_id_token, ReplayStore, authenticate_caller, VerifiedCaller
    access_tokens  the Credential Service access token carried in an SI token's ``token`` claim
    dcp_messages   PresentationQueryMessage / PresentationResponseMessage
    gaiax          the Gaia-X LegalPerson subject and credential
    signing        detached signatures with the node key (audit checkpoints)
    jose           compact JWS helpers shared by the above
"""
