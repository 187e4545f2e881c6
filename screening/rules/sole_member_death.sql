-- rule: sole_member_death
-- title: death of the only member of a household
-- legal basis: Interim Measures for Social Assistance, arts. 13 and 18 (benefits end with the circumstances that justified them; 应退尽退)
-- sources: deaths
-- A death registered for the one member of a one-member household: its benefits end,
-- and whatever is open is to be closed.
SELECT h.household_id,
       printf('death of the sole member registered (%s) on %s', min(d.registration_ref),
              strftime(min(d.date_of_death), '%Y-%m-%d')) AS finding,
       json_object('registration_ref', min(d.registration_ref),
                   'date_of_death', strftime(min(d.date_of_death), '%Y-%m-%d')) AS indicators
FROM deaths d JOIN members m USING (person_id) JOIN households h USING (household_id)
WHERE h.size = 1 AND d.date_of_death <= $as_of
GROUP BY h.household_id
