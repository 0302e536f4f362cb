-- Referrals of callers to early-action teams (SPEC section 11): who referred whom to which team,
-- with which risk factors; when the intervention started (engaged) and ended (closed).
CREATE TABLE desk_referrals (
    referral_id   TEXT    PRIMARY KEY,
    caller_ref    TEXT,
    team          TEXT    NOT NULL,
    risk_factors  TEXT    NOT NULL,
    note          TEXT,
    status        TEXT    NOT NULL,
    flag_id       TEXT,
    referred_by   TEXT    NOT NULL,
    referred_ms   BIGINT  NOT NULL,
    engaged_by    TEXT,
    engaged_ms    BIGINT,
    closed_by     TEXT,
    closed_ms     BIGINT,
    updated_ms    BIGINT  NOT NULL
);
CREATE INDEX desk_referrals_caller ON desk_referrals (caller_ref);
CREATE INDEX desk_referrals_updated ON desk_referrals (updated_ms);
CREATE INDEX desk_referrals_referred ON desk_referrals (referred_ms);
