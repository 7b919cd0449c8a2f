-- Where Onboard writes to a partner about its integration (a webhook endpoint disabled after
-- failing for days, or after 410 Gone). Optional; set with PATCH /partner.
ALTER TABLE partners ADD COLUMN contact_email TEXT;
