-- rule: property_registered
-- title: enrolled household owns several properties (eligibility review)
-- legal basis: Measures for the Determination of Minimum Living Guarantee Recipients (2021), art. 11: households owning two or more homes or commercial premises are in principle not eligible (应退尽退)
-- sources: property
-- The members of an enrolled household own at least $property_count residences or
-- commercial premises between them.
SELECT m.household_id,
       printf('%d properties registered (%d commercial)', count(*),
              count(*) FILTER (WHERE p.kind = 'commercial')) AS finding,
       json_object('properties', count(*), 'value_yuan', sum(p.value_fen) // 100) AS indicators
FROM property p JOIN members m USING (person_id)
WHERE m.status = 'enrolled' AND p.kind IN ('residence', 'commercial')
GROUP BY m.household_id
HAVING count(*) >= $property_count
