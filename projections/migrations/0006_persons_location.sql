-- Where a person is: the location (context.geo, the collector's GeoIP lookup) of their earliest and of their
-- latest event that has one. Existing rows read '' until their person's next update rewrites them.
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS initial_country LowCardinality(String) AFTER last_device_type;
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS initial_region String AFTER initial_country;
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS initial_city String AFTER initial_region;
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS last_country LowCardinality(String) AFTER initial_city;
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS last_region String AFTER last_country;
ALTER TABLE {db}.persons ADD COLUMN IF NOT EXISTS last_city String AFTER last_region
